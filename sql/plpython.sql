-- The PL/Python door (docs/plpython.md): modelstore.create_model, modelstore.explain and
-- modelstore.query, written in plpython3u and calling the same Python core as the Python API
-- (modelstore/doors/spi.py adapts PL/Python's SPI to it). They run inside the caller's transaction with
-- the caller's privileges (SECURITY INVOKER): a model sees the caller's uncommitted rows and obeys
-- row-level security.
--
-- Idempotent, re-applied by `modelstore migrate` when this file changes, and safe on a server without
-- plpython3u: modelstore.install_plpython() creates the extension and the functions when it can, and
-- otherwise leaves them absent and says why (a NOTICE, and modelstore.plpython_status()). Because this
-- file is not re-applied when only the server changes, a superuser who installs plpython3u later runs
-- `SELECT modelstore.install_plpython();` once.

-- Why the functions are there or not, for anyone to read.
CREATE OR REPLACE FUNCTION modelstore.plpython_status() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE
    WHEN EXISTS (SELECT FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                 WHERE p.pronamespace = 'modelstore'::regnamespace AND p.proname = 'create_model'
                   AND l.lanname = 'plpython3u')
        THEN 'installed: modelstore.create_model, modelstore.explain and modelstore.query (plpython3u)'
    WHEN NOT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'plpython3u')
        THEN 'absent: this server has no plpython3u (on Debian/Ubuntu: apt-get install postgresql-plpython3-'
             || current_setting('server_version_num')::int / 10000
             || '), then a superuser runs SELECT modelstore.install_plpython(); see docs/plpython.md'
    WHEN NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'plpython3u')
        THEN 'absent: plpython3u is available but not installed, and only a superuser may install it: '
             || 'a superuser runs SELECT modelstore.install_plpython(); see docs/plpython.md'
    ELSE 'absent: plpython3u is installed, but functions in an untrusted language can only be created by a '
         || 'superuser: a superuser runs SELECT modelstore.install_plpython(); see docs/plpython.md'
END
$$;

COMMENT ON FUNCTION modelstore.plpython_status() IS
    'Whether the PL/Python functions (create_model, explain, query) are installed, and if not, why and how.';

CREATE OR REPLACE FUNCTION modelstore.install_plpython() RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $install$
DECLARE
    -- The start of every function body: once per backend, make modelstore importable (the
    -- modelstore.python_path setting, docs/plpython.md) and keep modelstore.doors.plpython in GD.
    prelude CONSTANT text := $py$
ms = GD.get("modelstore.doors.plpython")
if ms is None:
    import os, site, sys
    # one BLAS thread: a backend serves one session, and a thread pool would compete with other backends
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # the path decides which code this untrusted language runs: it comes from the server's configuration
    # files only (modelstore._python_path()), never from a role's SET, ALTER ROLE or ALTER DATABASE
    path = plpy.execute("SELECT modelstore._python_path() AS path")[0]["path"]
    if path:
        before = list(sys.path)
        for entry in path.split(os.pathsep):
            if entry:
                site.addsitedir(entry)  # also reads the .pth files there (editable installs)
        sys.path[:] = [p for p in sys.path if p not in before] + before
    try:
        import modelstore.doors.plpython as ms
    except ImportError as exc:
        plpy.error("modelstore is not importable by the server's Python " + sys.version.split()[0] + ": " + str(exc),
                   hint="set modelstore.python_path in postgresql.conf (or ALTER SYSTEM) to the directories "
                        "holding modelstore and its dependencies, built for this Python; see docs/plpython.md",
                   sqlstate="58000")
    GD["modelstore.doors.plpython"] = ms
$py$;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'plpython3u') THEN
        IF NOT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'plpython3u')
           OR NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'modelstore: PL/Python functions not installed: %', modelstore.plpython_status();
            RETURN modelstore.plpython_status();
        END IF;
        BEGIN
            CREATE EXTENSION IF NOT EXISTS plpython3u;
        EXCEPTION WHEN undefined_file OR insufficient_privilege OR feature_not_supported THEN
            -- listed but not loadable (a broken package): leave the functions absent, keep the migration
            RAISE NOTICE 'modelstore: PL/Python functions not installed: CREATE EXTENSION plpython3u failed: %',
                SQLERRM;
            RETURN 'absent: CREATE EXTENSION plpython3u failed: ' || SQLERRM || '; see docs/plpython.md';
        END;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        IF modelstore.plpython_status() LIKE 'installed%' THEN
            RAISE NOTICE 'modelstore: PL/Python functions left as they are: only a superuser may replace them';
        ELSE
            RAISE NOTICE 'modelstore: PL/Python functions not installed: %', modelstore.plpython_status();
        END IF;
        RETURN modelstore.plpython_status();
    END IF;

    -- modelstore.python_path as the server's configuration files set it (postgresql.conf, its includes,
    -- ALTER SYSTEM): SECURITY DEFINER because pg_file_settings is for superusers, and a role's own SET
    -- of the parameter must not decide which Python code the functions import.
    CREATE OR REPLACE FUNCTION modelstore._python_path() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT setting FROM pg_catalog.pg_file_settings
         WHERE name = 'modelstore.python_path' AND error IS NULL
         ORDER BY seqno DESC LIMIT 1
    $$;
    COMMENT ON FUNCTION modelstore._python_path() IS
        'modelstore.python_path from the server configuration files: where PL/Python imports modelstore from.';

    -- DateStyle ISO and IntervalStyle postgres for the call only (the SET clauses): the output formats
    -- psycopg's loaders read. DateStyle 'ISO' alone keeps the caller's DMY/MDY order for input.
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION modelstore.create_model(
            name text, kind text, "table" text, target text, features text[], order_by text,
            lo text DEFAULT NULL, hi text DEFAULT NULL, "where" text DEFAULT NULL, l2 float8 DEFAULT NULL,
            chunk_rows integer DEFAULT NULL, replace boolean DEFAULT false,
            var_smoothing float8 DEFAULT NULL, alpha float8 DEFAULT NULL)
        RETURNS jsonb LANGUAGE plpython3u VOLATILE
        SET datestyle TO 'ISO' SET intervalstyle TO 'postgres'
        AS %L$f$, prelude || $py$
return ms.create_model(plpy, name=name, kind=kind, table=table, target=target, features=features,
                       order_by=order_by, lo=lo, hi=hi, where=where, l2=l2, chunk_rows=chunk_rows,
                       replace=replace, var_smoothing=var_smoothing, alpha=alpha)
$py$);
    COMMENT ON FUNCTION modelstore.create_model IS
        'Fit a model (linear, gaussian_nb, multinomial_nb, logistic) on the rows [lo, hi] of a table, store it '
        'under name (NULL: generated) and return its summary; the same core as store.fit (docs/plpython.md).';

    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION modelstore.explain(
            kind text, "table" text, target text, features text[], order_by text,
            lo text DEFAULT NULL, hi text DEFAULT NULL, "where" text DEFAULT NULL, l2 float8 DEFAULT NULL,
            chunk_rows integer DEFAULT NULL, var_smoothing float8 DEFAULT NULL, alpha float8 DEFAULT NULL)
        RETURNS SETOF text LANGUAGE plpython3u VOLATILE
        SET datestyle TO 'ISO' SET intervalstyle TO 'postgres'
        AS %L$f$, prelude || $py$
return ms.explain(plpy, kind=kind, table=table, target=target, features=features, order_by=order_by,
                  lo=lo, hi=hi, where=where, l2=l2, chunk_rows=chunk_rows, var_smoothing=var_smoothing,
                  alpha=alpha)
$py$);
    COMMENT ON FUNCTION modelstore.explain IS
        'The plan modelstore.create_model would run for the same arguments, one line per row, without running it.';

    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION modelstore.query(statement text)
        RETURNS SETOF jsonb LANGUAGE plpython3u VOLATILE
        SET datestyle TO 'ISO' SET intervalstyle TO 'postgres'
        AS %L$f$, prelude || $py$
return ms.query(plpy, statement)
$py$);
    COMMENT ON FUNCTION modelstore.query IS
        'Run a model-language statement (CREATE MODEL, ML.PREDICT, …): one jsonb object per result row.';

    RETURN modelstore.plpython_status();
END
$install$;

COMMENT ON FUNCTION modelstore.install_plpython() IS
    'Create plpython3u and the PL/Python functions where the server and the role allow it (superuser); '
    'otherwise leave them absent and say why. Safe to run again.';
REVOKE ALL ON FUNCTION modelstore.install_plpython() FROM PUBLIC;

SELECT modelstore.install_plpython();

-- Where PL/Python is absent, calling create_model / explain / query says so and points to
-- plpython_status(), instead of PostgreSQL's bare "function does not exist". These plpgsql stubs have the
-- real functions' signatures; install_plpython() replaces them (CREATE OR REPLACE) when it can.
CREATE OR REPLACE FUNCTION modelstore._plpython_missing(fn text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% needs PL/Python, which this database does not have (SELECT modelstore.plpython_status(); says why): %',
        fn, modelstore.plpython_status()
        USING ERRCODE = 'feature_not_supported',
              HINT = 'SELECT modelstore.plpython_status(); says why and how to install it (docs/plpython.md). '
                     'modelstore.predict and the other scoring functions work without it.';
END
$$;

DO $stubs$
BEGIN
    IF to_regprocedure('modelstore.create_model(text, text, text, text, text[], text, text, text, text, '
                       'float8, integer, boolean, float8, float8)') IS NULL THEN
        CREATE FUNCTION modelstore.create_model(
            name text, kind text, "table" text, target text, features text[], order_by text,
            lo text DEFAULT NULL, hi text DEFAULT NULL, "where" text DEFAULT NULL, l2 float8 DEFAULT NULL,
            chunk_rows integer DEFAULT NULL, replace boolean DEFAULT false,
            var_smoothing float8 DEFAULT NULL, alpha float8 DEFAULT NULL)
        RETURNS jsonb LANGUAGE plpgsql VOLATILE
        AS $f$ BEGIN PERFORM modelstore._plpython_missing('modelstore.create_model'); RETURN NULL; END $f$;
    END IF;
    IF to_regprocedure('modelstore.explain(text, text, text, text[], text, text, text, text, float8, integer, '
                       'float8, float8)') IS NULL THEN
        CREATE FUNCTION modelstore.explain(
            kind text, "table" text, target text, features text[], order_by text,
            lo text DEFAULT NULL, hi text DEFAULT NULL, "where" text DEFAULT NULL, l2 float8 DEFAULT NULL,
            chunk_rows integer DEFAULT NULL, var_smoothing float8 DEFAULT NULL, alpha float8 DEFAULT NULL)
        RETURNS SETOF text LANGUAGE plpgsql VOLATILE
        AS $f$ BEGIN PERFORM modelstore._plpython_missing('modelstore.explain'); RETURN; END $f$;
    END IF;
    IF to_regprocedure('modelstore.query(text)') IS NULL THEN
        CREATE FUNCTION modelstore.query(statement text) RETURNS SETOF jsonb LANGUAGE plpgsql VOLATILE
        AS $f$ BEGIN PERFORM modelstore._plpython_missing('modelstore.query'); RETURN; END $f$;
    END IF;
END
$stubs$;
