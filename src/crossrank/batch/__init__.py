"""Offline batch scoring: rescore millions of (query, text) or (query, candidates) rows, resumably.

The job is cut into fixed parts before any scoring starts; each part is scored whole by one worker and
written atomically. That one decision buys the rest: a crashed or killed job resumes without redoing
finished parts, a retried part overwrites itself instead of duplicating rows, and results do not depend
on how many workers ran (a part's batches are the same whoever scores it). Workers are a local process
pool, or Ray Data actors when one machine is not enough.
"""

from crossrank.batch.job import BatchReport, Job, score_file, score_rows

__all__ = ["BatchReport", "Job", "score_file", "score_rows"]
