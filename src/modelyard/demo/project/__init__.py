"""The model project the demo deploys, copied into the demo's home at run time.

``predict.py`` is what the replicas serve, ``monitor_job.py`` what the recurring job runs. They
live in the package (not as templates) so they are type-checked and tested like the rest.
"""
