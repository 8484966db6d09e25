# Helper image of local-path-provisioner (mkdir/rm of volume dirs); Debian's busybox-static.
REF=docker.io/library/busybox:1.35.0
KIND=static
ADD=("/bin/busybox:/bin/busybox:0755")
SYMLINKS=("busybox:/bin/sh" "busybox:/bin/mkdir" "busybox:/bin/rm" "busybox:/bin/chmod" "busybox:/bin/ls"
  "busybox:/bin/cat" "busybox:/bin/echo" "busybox:/bin/sleep" "busybox:/bin/wget" "busybox:/bin/nc" "busybox:/bin/env")
CMD='["sh"]'
