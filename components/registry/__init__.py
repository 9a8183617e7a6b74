"""The MLflow model registry: the LREM pyfunc flavour, challenger registration, aliases."""
