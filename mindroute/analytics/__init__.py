"""Usage analytics over the usage rollups and Logs: the filter, its reads, and the Usage page's shapes."""
