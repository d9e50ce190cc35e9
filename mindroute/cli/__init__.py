"""The `python -m mindroute` command line: database, accounts, seeding, backup and transfer."""
