"""Model training, and (later) the Airflow and Kubeflow operators that call Feast and the jobs."""
