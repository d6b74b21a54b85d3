"""Running a study: plan its tasks, reuse what a resumed study already finished, execute the rest (locally or on
Ray), record every result as it arrives, aggregate from the results, and keep the parent run's status true."""
