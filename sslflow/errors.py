"""The one exception type that means "the user's input is wrong".

The CLI turns it into a single line on stderr and exit code 2; anything else is
a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: a params key, a source file, a shard. The message names it."""


EXIT_USER_ERROR = 2
