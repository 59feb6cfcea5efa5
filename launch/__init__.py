"""The composition root: the service catalogue, the apps built from it, and the processes of `make run`
and `make stack`."""
