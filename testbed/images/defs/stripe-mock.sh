REF=docker.io/stripe/stripe-mock:$STRIPE_MOCK_VERSION
KIND=static
NEEDS=build_stripe_mock
ADD=("$SKX_CACHE/bin/stripe-mock-$STRIPE_MOCK_VERSION/stripe-mock:/stripe-mock:0755")
ENTRYPOINT='["/stripe-mock", "-http-port", "12111", "-https-port", "12112"]'
PORTS="12111/tcp 12112/tcp"
