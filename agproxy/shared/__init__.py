"""State the processes of one gateway share through Redis (`redis_url`): several workers
of one `agproxy serve --workers N`, or several hosts on one `store_url`.

Without `redis_url` none of this exists and one process keeps everything in memory, as
it always has. With it, each part below hooks into the piece it extends:
- shared/pool.py: cooldowns, sticky sessions, change notices (the scheduler, the policy);
- shared/tokens.py: one token refresh per account (the token manager);
- shared/rates.py: client keys' rpm (the key gate);
- shared/workers.py: the process list and the service switch (status, start, stop).
Redis going away fails nothing: each part falls back to the process's own state
(shared/link.py) and re-syncs when it returns.
"""
