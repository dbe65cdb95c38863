"""I/O: fetching targets, schedules, the allow-list, analysis worker processes, cgroup files."""
