"""`runner compare`, `runner best`, `runner plot`: read run folders through runner.rundir and
answer in the terminal. compare.main (the commands), compare.results (runs as rows),
compare.table (grouping, sorting, columns), compare.where (the --where language),
compare.render (table, markdown, CSV, JSON, sparklines, overlay plot). Never imports jax."""
