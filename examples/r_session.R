# An R session with modelstore through DBI + RPostgreSQL, using only modelstore's SQL functions:
# create a model (PL/Python's modelstore.create_model and the model language's modelstore.query),
# read its weights, predict next to the data, and explain a plan.
#
#   Rscript examples/r_session.R [table]        # default table: modelstore_demo.sales (`make demo`)
#
# Connection: the libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD. The table needs an
# integer ordering column `id`, numeric columns `price`, `promo` and a numeric target `revenue`
# (the demo table has them). Output lines are tab-separated, so that tests/test_r.py can read them.
suppressPackageStartupMessages({
  library(DBI)
  library(RPostgreSQL)
})

args <- commandArgs(trailingOnly = TRUE)
table <- if (length(args) >= 1) args[[1]] else "modelstore_demo.sales"
env <- function(name, default) { v <- Sys.getenv(name); if (nzchar(v)) v else default }
con <- dbConnect(PostgreSQL(), host = env("PGHOST", "localhost"), port = as.integer(env("PGPORT", "5432")),
                 dbname = env("PGDATABASE", "postgres"), user = env("PGUSER", Sys.getenv("USER")),
                 password = env("PGPASSWORD", ""))
on.exit(dbDisconnect(con))
q <- function(sql, ...) {
  # DBI's sqlInterpolate quotes each ?value as a string literal; nothing is pasted raw
  dbGetQuery(con, sqlInterpolate(con, sql, ...))
}

# 1. a linear model on rows 1..800, with named arguments (PL/Python; docs/plpython.md)
created <- q('SELECT modelstore.create_model(name => ?name, kind => \'linear\', "table" => ?table, target => \'revenue\',
               features => ARRAY[\'price\', \'promo\'], order_by => \'id\', lo => \'1\', hi => \'800\',
               replace => true)::text AS summary', name = "r_linear", table = table)
cat("CREATED\t", nchar(created$summary[[1]]) > 0, "\n", sep = "")

# 2. the same model in the model language (BigQuery ML syntax; docs/language.md)
statement <- paste0("CREATE OR REPLACE MODEL r_language OPTIONS (model_type = 'linear_reg', ",
                    "input_label_cols = ['revenue'], order_by = 'id') AS SELECT price, promo, revenue FROM ",
                    table, " WHERE id BETWEEN 1 AND 800")
invisible(q("SELECT result::text FROM modelstore.query(?statement) AS result", statement = statement))

# 3. weights (plain SQL function: works on any PostgreSQL)
for (model in c("r_linear", "r_language")) {
  w <- q("SELECT feature, weight FROM modelstore.weights(?model)", model = model)
  for (i in seq_len(nrow(w))) cat("WEIGHT\t", model, "\t", w$feature[i], "\t", sprintf("%.17g", w$weight[i]), "\n", sep = "")
}

# 4. predictions computed in the database
# (the table is an identifier: quoted by DBI, one quoted part per schema/table name)
ident <- dbQuoteIdentifier(con, Id(schema = if (grepl(".", table, fixed = TRUE)) sub("\\..*", "", table) else NULL,
                                   table = sub("^.*\\.", "", table)))
p <- q(paste0("SELECT id, modelstore.predict(?model, ARRAY[price, promo]) AS prediction FROM ", ident,
              " WHERE id > 800 ORDER BY id LIMIT 5"), model = "r_linear")
for (i in seq_len(nrow(p))) cat("PREDICT\t", p$id[i], "\t", sprintf("%.17g", p$prediction[i]), "\n", sep = "")

# 5. the plan of a wider request, without running it (stored statistics of rows 1..800 and a scan of the
#    rest, or one scan when the cost model finds that cheaper)
plan <- q('SELECT * FROM modelstore.explain(kind => \'linear\', "table" => ?table, target => \'revenue\',
            features => ARRAY[\'price\'], order_by => \'id\', lo => \'1\', hi => \'1000\')', table = table)
for (line in plan[[1]]) cat("PLAN\t", line, "\n", sep = "")
