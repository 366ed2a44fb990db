"""MLflow "models from code" entry point: MLflow copies this file into the logged model and runs it on load.

Logging the model this way stores no cloudpickled object in the registry, so loading a registered version
executes only this reviewed file plus the checkpoint read with ``torch.load(weights_only=True)``.
Never imported by the library itself.
"""
import mlflow.models

from components.registry.pyfunc import EulerNetPyfunc

mlflow.models.set_model(EulerNetPyfunc())
