"""Entry point for `inv`: bottle's tasks live in the bottle_tasks package."""
from bottle_tasks import executor, namespace

ns = namespace()
executor.EXIT_WHEN_DONE = True  # this is `inv`'s own process
