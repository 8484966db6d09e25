"""Reference workloads of superkubernetex: frontend, auth, payment, instance.

Stand-ins for the client's images that exercise what the platform provides
(per-tenant databases, Redis sessions, JWT, Stripe webhooks, metrics, logs,
probes, graceful shutdown). Each service is one module, run as
``python3 -m skx_apps.<service>``; ``python3 -m skx_apps`` picks the module
named by SERVICE_NAME. Only libraries Debian 12 ships are used.
"""
SERVICES = ("frontend", "auth", "payment", "instance")
