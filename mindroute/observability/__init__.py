"""What an operator watches: the process's log lines, its Prometheus metrics and its health."""
