"""Entry point for `inv`: bottle's tasks live in the bottle_tasks package."""
from bottle_tasks import namespace

ns = namespace()
