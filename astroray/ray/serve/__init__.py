"""Ray Serve: inference deployments composed behind one FastAPI ingress.

``serve run configs/serve.yaml`` (or ``serve.run(build_app(ServeAppConfig()))``).
"""
