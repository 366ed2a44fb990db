"""Ray Serve liveness endpoint.

``app.build_app(model_name, tracking_uri=None, config=None, checkpoint=None, deployment_options=None)`` returns the
Serve application; ``app.app_builder`` is the Serve-config-file entry point; ``config.ServeConfig`` is the
``serve:`` params section; ``inputs`` decodes request bodies with named errors. Nothing is imported here.
"""
