-- Scoring in SQL: modelstore.predict, predict_class, predict_proba and weights over the named models
-- of modelstore.fitted_models, in plain SQL and PL/pgSQL only (no extension), so they work on any
-- PostgreSQL. Idempotent (CREATE OR REPLACE only), re-applied by `modelstore migrate` when it changes.
--
-- Each call reads one catalog row by its unique name and evaluates the model's `state`, the output of
-- the model class's to_state(): floats as JSON numbers, NaN as null, ±inf as "inf"/"-inf", matrices
-- as nested lists (one list per class). The arithmetic follows the Python models' predict /
-- predict_proba step by step. docs/sql.md documents the functions, their errors and the grants.
--
-- The functions run with the caller's rights (SECURITY INVOKER): a role scores a model only when it
-- may read the model's catalog row, so a model's parameters do not leak through them.

-- A JSON array of floats (nested lists for matrices) as a float8[] of the same shape. A state array
-- holds only numbers, null (NaN) and the strings "inf"/"-inf", so its text with [] turned into {} is an
-- array literal that float8 reads: one C-level parse instead of a subquery per element.
-- STABLE, not IMMUTABLE: the text → float8[] cast goes through array_in, which is STABLE, and a
-- function declared more strictly than its body is never inlined.
CREATE OR REPLACE FUNCTION modelstore._floats(j jsonb) RETURNS float8[]
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.array_replace(pg_catalog.translate(j::text, '[]', '{}')::float8[], NULL, 'NaN'::float8) $$;

-- One JSON float (number, null = NaN, "inf"/"-inf") as float8.
CREATE OR REPLACE FUNCTION modelstore._float(j jsonb) RETURNS float8
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN j IS NULL THEN NULL ELSE coalesce((j #>> '{}')::float8, 'NaN'::float8) END $$;

-- One named model's kind, features and state (the output of to_state()), or an error naming it: the
-- lookup every public function starts with.
CREATE OR REPLACE FUNCTION modelstore._model(
    p_model text, OUT kind text, OUT features text[], OUT state jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    -- serving: the state without what scoring never reads, kept by a trigger (migration 0009)
    SELECT m.kind, m.features, m.state INTO kind, features, state
      FROM modelstore.fitted_models AS m
     WHERE m.name = p_model;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'modelstore: no model named "%"', p_model
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name, kind FROM modelstore.models lists the stored models.';
    END IF;
    IF coalesce((state ->> 'version')::integer, 1) > 1 THEN
        RAISE EXCEPTION 'modelstore: model "%" has a state of version %, newer than these SQL functions read (1)',
                        p_model, state ->> 'version'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run `modelstore migrate` with the modelstore version that stored it.';
    END IF;
END;
$$;

-- The scores of a named model for one feature vector; with p_group, of that group's model in a per-group
-- model (group_by; docs/serving.md), the global model for a group it has not seen:
--   linear:          value = intercept + coef·x (scores NULL);
--   classifiers:     scores[c] = the unnormalised log-probability of classes[c] (classes in state order):
--                    gaussian_nb / multinomial_nb the joint log-likelihood, logistic K ≥ 3 the K
--                    decision scores, logistic binary [0, z] (softmax of [0, z] is [σ(−z), σ(z)] and
--                    its argmax is "z > 0", the Python model's rule).
-- A NULL element in p_x gives NULL value and scores (the caller returns NULL); NaN/±Infinity, a wrong
-- length or shape, and an unknown name raise errors naming the problem.
-- The private helpers carry no SET search_path: their callers, the public functions below, pin it, and
-- a SET clause costs a configuration save and restore on every call (measured: ~1 µs of ~15).
DROP FUNCTION IF EXISTS modelstore._scores(text, float8[], text);  -- before p_group (issue #18)
CREATE OR REPLACE FUNCTION modelstore._scores(
    p_model text, p_x float8[], p_caller text, p_group text,
    OUT kind text, OUT classes jsonb, OUT value float8, OUT scores float8[])
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    v_features text[];
    v_state jsonb;
    d integer;
    o integer;          -- p_x[o + j] is feature j, whatever the array's lower bound
    k integer;
    bad integer;
    v_group_by text;
    v_model_id bigint;
    v_coef float8[];
    v_intercept float8;
    w float8[];         -- weights: coef (linear 1-D, logistic [row][j]), theta or feature_log_prob [c][j]
    v float8[];         -- var (gaussian_nb)
    b float8[];         -- per-class constant: intercept (logistic), class_prior or class_log_prior (NB)
    lognorm float8[];   -- gaussian_nb: Σ_j ln(2π var_cj) per class, from the catalog (NULL: computed here)
    s float8;
    q float8;
    diff float8;
BEGIN
    IF p_group IS NULL THEN
        -- the parameters as native arrays, kept beside the state by a trigger (migration 0009): no
        -- decompression of the state and no JSON parsing per call
        SELECT m.kind, m.features, m.serving_classes, m.serving_w, m.serving_v, m.serving_b, m.serving_c
          INTO kind, v_features, classes, w, v, b, lognorm
          FROM modelstore.fitted_models AS m
         WHERE m.name = p_model;
        IF kind IN ('sgd_logistic', 'sgd_svm', 'sgd_linear') THEN
            -- the SGD kinds score through their pipeline, kept in the state (no native arrays for them)
            SELECT r.state INTO v_state FROM modelstore._model(p_model) AS r;
            classes := v_state -> 'classes';
        ELSIF w IS NULL THEN
            PERFORM modelstore._model(p_model);  -- raises "no model named …" or "a state of version …"
        END IF;
    ELSE
        -- two lookups by unique index, not a join: a cached generic plan of the join may hash every group
        SELECT m.kind, m.features, m.serving_classes, m.serving_w, m.serving_v, m.serving_b, m.serving_c, m.group_by,
               m.model_id
          INTO kind, v_features, classes, w, v, b, lognorm, v_group_by, v_model_id
          FROM modelstore.fitted_models AS m
         WHERE m.name = p_model;
        IF NOT FOUND THEN
            PERFORM modelstore._model(p_model);  -- raises "no model named …"
        END IF;
        SELECT g.state, g.coef, g.intercept INTO v_state, v_coef, v_intercept
          FROM modelstore.group_models AS g
         WHERE g.model_id = v_model_id AND g.group_key = p_group;
        IF v_group_by IS NULL THEN
            RAISE EXCEPTION 'modelstore: model "%" has no per-group models', p_model
                USING ERRCODE = 'wrong_object_type',
                      HINT = format('Fit it with group_by, or call modelstore.predict(%L, features).', p_model);
        END IF;
        IF v_state IS NULL THEN
            -- a group the model has not seen: the global model, w, v, b as read
            IF w IS NULL THEN
                PERFORM modelstore._model(p_model);  -- raises "a state of version …"
            END IF;
        ELSIF v_coef IS NOT NULL THEN  -- the group's linear parameters, stored as native arrays
            w := v_coef;
            b := ARRAY[v_intercept];
        ELSE  -- the group's own classifier, from its state (its classes may be fewer than the global model's)
            classes := v_state -> 'classes';
            v := NULL;
            lognorm := NULL;
            IF kind = 'logistic' THEN
                w := modelstore._floats(v_state -> 'coef');
                b := modelstore._floats(v_state -> 'intercept');
            ELSIF kind = 'gaussian_nb' THEN
                w := modelstore._floats(v_state -> 'theta');
                v := modelstore._floats(v_state -> 'var');
                b := modelstore._floats(v_state -> 'class_prior');
            ELSIF kind = 'multinomial_nb' THEN
                w := modelstore._floats(v_state -> 'feature_log_prob');
                b := modelstore._floats(v_state -> 'class_log_prior');
            END IF;
        END IF;
    END IF;

    d := cardinality(v_features);
    IF array_ndims(p_x) > 1 THEN
        RAISE EXCEPTION 'modelstore: model "%" takes a one-dimensional features array, got one of % dimensions',
                        p_model, array_ndims(p_x)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_x) <> d THEN
        RAISE EXCEPTION 'modelstore: model "%" takes % feature(s) (%), got an array of % instead',
                        p_model, d, array_to_string(v_features, ', '), cardinality(p_x)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Pass ARRAY[%s] in this order.', array_to_string(v_features, ', '));
    END IF;
    IF kind IN ('sgd_logistic', 'sgd_svm', 'sgd_linear') THEN
        -- the SGD kinds carry their pipeline: a NULL element is imputed (its column's mean), not NULL out
        IF 'NaN'::float8 = ANY (p_x) OR 'Infinity'::float8 = ANY (p_x) OR '-Infinity'::float8 = ANY (p_x) THEN
            RAISE EXCEPTION 'modelstore: a feature of model "%" is NaN or infinite; features must be finite numbers or NULL',
                            p_model USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_array_length(v_state -> 'pipeline' -> 'text') > 0 THEN
            RAISE EXCEPTION 'modelstore: model "%" has text features (%), which a float8[] cannot carry', p_model,
                            (SELECT string_agg(t, ', ') FROM jsonb_array_elements_text(v_state -> 'pipeline' -> 'text') t)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Pass the row as jsonb: modelstore.%s_row(%L, to_jsonb(t)).', p_caller, p_model);
        END IF;
        o := coalesce(array_lower(p_x, 1), 1) - 1;
        SELECT g.value, g.scores INTO value, scores
          FROM modelstore._sgd_scores(p_model, v_state,
                   (SELECT jsonb_object_agg(v_features[j], p_x[o + j]) FROM generate_series(1, d) AS j)) AS g;
        IF jsonb_typeof(classes) = 'null' THEN
            classes := NULL;
        END IF;
        RETURN;
    END IF;
    IF array_position(p_x, NULL) IS NOT NULL THEN
        RETURN;  -- NULL in, NULL out (as a STRICT function would)
    END IF;
    IF 'NaN'::float8 = ANY (p_x) OR 'Infinity'::float8 = ANY (p_x) OR '-Infinity'::float8 = ANY (p_x) THEN
        bad := coalesce(array_position(p_x, 'NaN'::float8), array_position(p_x, 'Infinity'::float8),
                        array_position(p_x, '-Infinity'::float8)) - coalesce(array_lower(p_x, 1), 1) + 1;
        RAISE EXCEPTION 'modelstore: feature "%" of model "%" is %; features must be finite numbers',
                        v_features[bad], p_model, p_x[bad + coalesce(array_lower(p_x, 1), 1) - 1]
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    o := coalesce(array_lower(p_x, 1), 1) - 1;

    IF kind = 'linear' THEN
        IF cardinality(w) IS DISTINCT FROM d OR cardinality(b) IS DISTINCT FROM 1 THEN
            RAISE EXCEPTION 'modelstore: model "%" has a malformed state: % coefficients for % features',
                            p_model, cardinality(w), d USING ERRCODE = 'data_corrupted';
        END IF;
        -- Python: intercept_ + X @ coef_ (the dot product first)
        s := 0;
        FOR j IN 1 .. d LOOP
            s := s + p_x[o + j] * w[j];
        END LOOP;
        value := b[1] + s;
        RETURN;
    END IF;

    k := jsonb_array_length(classes);
    scores := array_fill(NULL::float8, ARRAY[k]);

    IF kind = 'logistic' THEN                                 -- w: (1, d) for two classes, (K, d) otherwise
        IF cardinality(w) IS DISTINCT FROM (CASE WHEN k = 2 THEN 1 ELSE k END) * d
           OR cardinality(b) IS DISTINCT FROM (CASE WHEN k = 2 THEN 1 ELSE k END) THEN
            RAISE EXCEPTION 'modelstore: model "%" has a malformed state: coef/intercept do not fit % classes and % features',
                            p_model, k, d USING ERRCODE = 'data_corrupted';
        END IF;
        FOR c IN 1 .. CASE WHEN k = 2 THEN 1 ELSE k END LOOP
            s := 0;                                         -- Python: X @ coef_.T + intercept_
            FOR j IN 1 .. d LOOP
                s := s + p_x[o + j] * w[c][j];
            END LOOP;
            scores[c] := s + b[c];
        END LOOP;
        IF k = 2 THEN
            -- NaN > 0 is true in PostgreSQL but false in numpy: a NaN score picks classes[0], as in Python
            scores := CASE WHEN scores[1] = 'NaN'::float8 THEN ARRAY['NaN'::float8, 'NaN'::float8]
                           ELSE ARRAY[0::float8, scores[1]] END;
        END IF;
    ELSIF kind = 'gaussian_nb' THEN
        IF cardinality(w) IS DISTINCT FROM k * d OR cardinality(v) IS DISTINCT FROM k * d
           OR cardinality(b) IS DISTINCT FROM k THEN
            RAISE EXCEPTION 'modelstore: model "%" has a malformed state: theta/var/class_prior do not fit % classes and % features',
                            p_model, k, d USING ERRCODE = 'data_corrupted';
        END IF;
        -- Python (= scikit-learn): log prior_c + (−½ Σ log(2π var) − ½ Σ (x − θ)² / var)
        FOR c IN 1 .. k LOOP
            q := 0;
            IF lognorm IS NOT NULL AND cardinality(lognorm) = k THEN
                -- Σ ln(2π var) stored beside the state (migration 0009), summed in the same order as below
                s := lognorm[c];
                IF s <> 'NaN'::float8 THEN
                    FOR j IN 1 .. d LOOP
                        diff := p_x[o + j] - w[c][j];
                        q := q + diff * diff / v[c][j];
                    END LOOP;
                END IF;
            ELSE
                s := 0;
                FOR j IN 1 .. d LOOP
                    IF v[c][j] = 0 THEN  -- var_smoothing = 0 and a constant feature: numpy gets inf − inf = NaN
                        s := 'NaN';
                        EXIT;
                    END IF;
                    s := s + ln(2 * pi() * v[c][j]);
                    diff := p_x[o + j] - w[c][j];
                    q := q + diff * diff / v[c][j];
                END LOOP;
            END IF;
            scores[c] := ln(b[c]) + (-0.5 * s - 0.5 * q);
        END LOOP;
    ELSIF kind = 'multinomial_nb' THEN
        IF cardinality(w) IS DISTINCT FROM k * d OR cardinality(b) IS DISTINCT FROM k THEN
            RAISE EXCEPTION 'modelstore: model "%" has a malformed state: feature_log_prob/class_log_prior do not fit % classes and % features',
                            p_model, k, d USING ERRCODE = 'data_corrupted';
        END IF;
        -- Python (= scikit-learn): X @ feature_log_prob_.T + class_log_prior_ (0 · −inf = NaN, as numpy)
        FOR c IN 1 .. k LOOP
            s := 0;
            FOR j IN 1 .. d LOOP
                s := s + p_x[o + j] * w[c][j];
            END LOOP;
            scores[c] := s + b[c];
        END LOOP;
    ELSE
        RAISE EXCEPTION 'modelstore: model "%" is of kind "%", which modelstore.% does not know', p_model, kind, p_caller
            USING ERRCODE = 'feature_not_supported';
    END IF;
END
$$;

-- An SGD-trained model's scores for one row given as a JSON object {column: value} (docs/continuous.md):
-- its pipeline, from the stored state, exactly as the Python model's Pipeline.transform applies it —
-- numeric columns (x − mean) / scale with NULL (or an absent value) imputed by the mean; text columns
-- one-hot over the stored categories (unknown or NULL: zeros) or hashed into hash_buckets buckets (the
-- first three bytes of md5('column=value'), big-endian, modulo the bucket count) — then the linear
-- scores as _scores reports them: value for a regression; [0, z] for two classes; the K one-vs-rest
-- scores otherwise.
CREATE OR REPLACE FUNCTION modelstore._sgd_scores(
    p_model text, p_state jsonb, p_row jsonb, OUT value float8, OUT scores float8[])
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    pipe jsonb := p_state -> 'pipeline';
    mean float8[] := modelstore._floats(pipe -> 'mean');
    scale float8[] := modelstore._floats(pipe -> 'scale');
    buckets integer := (pipe ->> 'hash_buckets')::integer;
    x float8[] := '{}';
    extra float8[];
    col text;
    v text;
    jv jsonb;
    j integer := 0;
    digest bytea;
    b integer;
    cats jsonb;
    k integer;
    outputs integer;
    d integer;
    w float8[];
    bias float8[];
    s float8;
BEGIN
    FOR col IN SELECT jsonb_array_elements_text(pipe -> 'numeric') LOOP
        j := j + 1;
        jv := p_row -> col;
        IF jv IS NULL OR jsonb_typeof(jv) = 'null' THEN
            x := x || ((mean[j] - mean[j]) / scale[j]);  -- imputed by the mean, then scaled: 0
        ELSIF jsonb_typeof(jv) = 'boolean' THEN
            x := x || (((jv #>> '{}')::boolean::int::float8 - mean[j]) / scale[j]);
        ELSE
            x := x || (((jv #>> '{}')::float8 - mean[j]) / scale[j]);
        END IF;
    END LOOP;
    IF buckets > 0 THEN
        extra := array_fill(0::float8, ARRAY[buckets]);
        FOR col IN SELECT jsonb_array_elements_text(pipe -> 'text') LOOP
            v := p_row ->> col;
            IF v IS NOT NULL THEN
                digest := decode(md5(col || '=' || v), 'hex');
                b := (get_byte(digest, 0) * 65536 + get_byte(digest, 1) * 256 + get_byte(digest, 2)) % buckets;
                extra[b + 1] := extra[b + 1] + 1;
            END IF;
        END LOOP;
        x := x || extra;
    ELSE
        FOR col IN SELECT jsonb_array_elements_text(pipe -> 'text') LOOP
            cats := pipe -> 'categories' -> col;
            v := p_row ->> col;
            extra := array_fill(0::float8, ARRAY[jsonb_array_length(cats)]);
            IF v IS NOT NULL THEN
                FOR c IN 1 .. jsonb_array_length(cats) LOOP
                    IF cats ->> (c - 1) = v THEN
                        extra[c] := 1;
                        EXIT;
                    END IF;
                END LOOP;
            END IF;
            x := x || extra;
        END LOOP;
    END IF;
    d := coalesce(cardinality(x), 0);
    w := modelstore._floats(p_state -> 'coef');
    IF jsonb_typeof(p_state -> 'classes') IS DISTINCT FROM 'array' THEN
        IF coalesce(cardinality(w), 0) <> d THEN
            RAISE EXCEPTION 'modelstore: model "%" has a malformed state: % coefficients for % features',
                            p_model, cardinality(w), d USING ERRCODE = 'data_corrupted';
        END IF;
        s := 0;  -- Python: X @ coef_ + intercept_
        FOR i IN 1 .. d LOOP
            s := s + x[i] * w[i];
        END LOOP;
        value := s + modelstore._float(p_state -> 'intercept');
        RETURN;
    END IF;
    k := jsonb_array_length(p_state -> 'classes');
    outputs := CASE WHEN k = 2 THEN 1 ELSE k END;
    bias := modelstore._floats(p_state -> 'intercept');
    IF coalesce(cardinality(w), 0) <> outputs * d OR cardinality(bias) <> outputs THEN
        RAISE EXCEPTION 'modelstore: model "%" has a malformed state: coef/intercept do not fit % classes and % features',
                        p_model, k, d USING ERRCODE = 'data_corrupted';
    END IF;
    scores := array_fill(NULL::float8, ARRAY[k]);
    FOR c IN 1 .. outputs LOOP
        s := 0;  -- Python: X @ coef_.T + intercept_
        FOR i IN 1 .. d LOOP
            s := s + x[i] * w[c][i];  -- coef is (outputs, d)
        END LOOP;
        scores[c] := s + bias[c];
    END LOOP;
    IF k = 2 THEN
        scores := CASE WHEN scores[1] = 'NaN'::float8 THEN ARRAY['NaN'::float8, 'NaN'::float8]
                       ELSE ARRAY[0::float8, scores[1]] END;
    END IF;
END
$$;

-- _scores for one row as a JSON object {column: value} (modelstore.predict_row(model, to_jsonb(t))): the SGD
-- kinds encode it with their pipeline; the others read their features from it as float8.
CREATE OR REPLACE FUNCTION modelstore._scores_row(
    p_model text, p_row jsonb, p_caller text,
    OUT kind text, OUT classes jsonb, OUT value float8, OUT scores float8[])
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    v_features text[];
    v_state jsonb;
    missing text[];
    r record;
BEGIN
    SELECT m.kind, m.features, m.state INTO kind, v_features, v_state FROM modelstore._model(p_model) AS m;
    IF jsonb_typeof(p_row) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'modelstore: model "%" takes a row as a JSON object {column: value}, got a JSON %',
                        p_model, jsonb_typeof(p_row) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    missing := ARRAY(SELECT f FROM unnest(v_features) AS f WHERE NOT p_row ? f);
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION 'modelstore: the row lacks column(s) % of model "%"', array_to_string(missing, ', '), p_model
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind IN ('sgd_logistic', 'sgd_svm', 'sgd_linear') THEN
        classes := CASE WHEN jsonb_typeof(v_state -> 'classes') = 'array' THEN v_state -> 'classes' END;
        SELECT g.value, g.scores INTO value, scores FROM modelstore._sgd_scores(p_model, v_state, p_row) AS g;
        RETURN;
    END IF;
    r := modelstore._scores(p_model, ARRAY(SELECT (p_row ->> f)::float8 FROM unnest(v_features) WITH ORDINALITY
                                           AS u(f, i) ORDER BY i), p_caller);
    kind := r.kind;
    classes := r.classes;
    value := r.value;
    scores := r.scores;
END
$$;

-- The index (1-based) of the first maximum of scores: numpy's argmax, NaN included (PostgreSQL orders
-- NaN above every number and equal to itself, so the first NaN wins, as in numpy).
CREATE OR REPLACE FUNCTION modelstore._argmax(scores float8[]) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    best integer := 1;
BEGIN
    FOR c IN 2 .. cardinality(scores) LOOP
        IF scores[c] > scores[best] THEN
            best := c;
        END IF;
    END LOOP;
    RETURN best;
END
$$;

-- What the public functions answer from _scores' (kind, classes, value, scores): written once here, so
-- that predict / predict_class / predict_proba answer alike over a feature array, a jsonb row or a group.
-- p_call names the function a text-label classifier should be asked through instead (the hint).
CREATE OR REPLACE FUNCTION modelstore._answer_value(p_model text, p_kind text, p_classes jsonb, p_value float8,
                                                    p_scores float8[], p_call text) RETURNS float8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    label jsonb;
BEGIN
    IF p_kind IN ('linear', 'sgd_linear') OR p_scores IS NULL THEN
        RETURN p_value;
    END IF;
    label := p_classes -> (modelstore._argmax(p_scores) - 1);
    IF jsonb_typeof(label) = 'number' THEN
        RETURN (label #>> '{}')::float8;
    ELSIF jsonb_typeof(label) = 'boolean' THEN
        RETURN CASE WHEN label = 'true'::jsonb THEN 1 ELSE 0 END;
    END IF;
    RAISE EXCEPTION 'modelstore: model "%" predicts text labels (%), which predict cannot return as float8',
                    p_model, (SELECT string_agg(quote_literal(c), ', ') FROM jsonb_array_elements_text(p_classes) AS c)
        USING ERRCODE = 'datatype_mismatch',
              HINT = format('Use modelstore.%s for the label as text.', p_call);
END
$$;

CREATE OR REPLACE FUNCTION modelstore._answer_label(p_kind text, p_classes jsonb, p_value float8,
                                                    p_scores float8[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_kind IN ('linear', 'sgd_linear') THEN
        RETURN p_value::text;  -- a regression's "class" is its prediction, as text
    ELSIF p_scores IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN p_classes ->> (modelstore._argmax(p_scores) - 1);
END
$$;

CREATE OR REPLACE FUNCTION modelstore._answer_proba(p_model text, p_kind text, p_classes jsonb, p_scores float8[])
RETURNS TABLE (class_label text, probability float8)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
ROWS 3
AS $$
DECLARE
    k integer;
    m float8;
    total float8 := 0;
    e float8[];
BEGIN
    IF p_kind IN ('linear', 'sgd_linear') THEN
        RAISE EXCEPTION 'modelstore: model "%" is a linear regression and has no class probabilities', p_model
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('Use modelstore.predict(%L, …) for its prediction.', p_model);
    END IF;
    k := jsonb_array_length(p_classes);
    IF p_scores IS NOT NULL THEN
        -- softmax with the maximum subtracted (log-sum-exp): no overflow however large the scores;
        -- exp below −745 underflows to 0 (PostgreSQL raises an error there instead of returning 0)
        m := p_scores[modelstore._argmax(p_scores)];
        e := array_fill(NULL::float8, ARRAY[k]);
        IF m <> 'NaN'::float8 AND m <> 'Infinity'::float8 AND m <> '-Infinity'::float8 THEN
            FOR c IN 1 .. k LOOP
                e[c] := CASE WHEN p_scores[c] - m < -745 THEN 0 ELSE exp(p_scores[c] - m) END;
                total := total + e[c];
            END LOOP;
        ELSE
            total := 'NaN';  -- every score −inf, or one NaN/+inf: undefined, as in numpy
        END IF;
    END IF;
    FOR c IN 1 .. k LOOP
        class_label := p_classes ->> (c - 1);
        probability := CASE WHEN p_scores IS NULL THEN NULL WHEN total = 'NaN'::float8 THEN 'NaN'::float8
                            ELSE e[c] / total END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION modelstore.predict(model text, features float8[]) RETURNS float8
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores(model, features, 'predict', NULL);
    RETURN modelstore._answer_value(model, r.kind, r.classes, r.value, r.scores, format('predict_class(%L, …)', model));
END
$$;

COMMENT ON FUNCTION modelstore.predict(text, float8[]) IS
    'Prediction of a named model for one feature vector (in the model''s feature order): linear: '
    'intercept + coef·x; classifiers: the predicted class when the labels are numbers (booleans as 0/1). '
    'NULL when an element is NULL.';

CREATE OR REPLACE FUNCTION modelstore.predict_class(model text, features float8[]) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores(model, features, 'predict_class', NULL);
    RETURN modelstore._answer_label(r.kind, r.classes, r.value, r.scores);
END
$$;

COMMENT ON FUNCTION modelstore.predict_class(text, float8[]) IS
    'The predicted class label of a named classifier as text (first maximum in class order on ties, as '
    'numpy''s argmax); for a linear model its prediction as text. NULL when an element is NULL.';

CREATE OR REPLACE FUNCTION modelstore.predict_proba(model text, features float8[])
RETURNS TABLE (class_label text, probability float8)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
ROWS 3
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores(model, features, 'predict_proba', NULL);
    RETURN QUERY SELECT * FROM modelstore._answer_proba(model, r.kind, r.classes, r.scores);
END
$$;

COMMENT ON FUNCTION modelstore.predict_proba(text, float8[]) IS
    'Class probabilities of a named classifier (gaussian_nb, multinomial_nb, logistic) for one feature '
    'vector: one row per class in class order. NULL probabilities when an element is NULL.';

-- The same three functions over a row given as jsonb (to_jsonb(t) of a table row, or a literal object),
-- named *_row rather than overloaded so that predict('m', NULL) stays unambiguous:
-- the door for models with text features (the SGD kinds' one-hot or hashed columns, docs/continuous.md).
CREATE OR REPLACE FUNCTION modelstore.predict_row(model text, row_values jsonb) RETURNS float8
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores_row(model, row_values, 'predict');
    RETURN modelstore._answer_value(model, r.kind, r.classes, r.value, r.scores, format('predict_class_row(%L, …)', model));
END
$$;

COMMENT ON FUNCTION modelstore.predict_row(text, jsonb) IS
    'Prediction of a named model for one row given as a JSON object {column: value} (e.g. to_jsonb(t)); '
    'SGD-trained models apply their stored pipeline (imputation, scaling, one-hot or hashing) first.';

CREATE OR REPLACE FUNCTION modelstore.predict_class_row(model text, row_values jsonb) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores_row(model, row_values, 'predict_class');
    RETURN modelstore._answer_label(r.kind, r.classes, r.value, r.scores);
END
$$;

COMMENT ON FUNCTION modelstore.predict_class_row(text, jsonb) IS
    'The predicted class label of a named classifier as text, for one row given as a JSON object.';

CREATE OR REPLACE FUNCTION modelstore.predict_proba_row(model text, row_values jsonb)
RETURNS TABLE (class_label text, probability float8)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
ROWS 3
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores_row(model, row_values, 'predict_proba');
    RETURN QUERY SELECT * FROM modelstore._answer_proba(model, r.kind, r.classes, r.scores);
END
$$;

COMMENT ON FUNCTION modelstore.predict_proba_row(text, jsonb) IS
    'Class probabilities of a named classifier for one row given as a JSON object: one row per class.';

CREATE OR REPLACE FUNCTION modelstore.weights(model text)
RETURNS TABLE (class_label text, feature text, weight float8)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind text;
    v_features text[];
    v_state jsonb;
    v_classes jsonb;
    d integer;
    k integer;
    w float8[];
    v float8[];
    b float8[];
BEGIN
    SELECT r.kind, r.features, r.state INTO v_kind, v_features, v_state FROM modelstore._model(model) AS r;
    d := cardinality(v_features);
    v_classes := v_state -> 'classes';
    k := coalesce(jsonb_array_length(v_classes), 0);

    IF v_kind = 'linear' THEN
        w := modelstore._floats(v_state -> 'coef');
        class_label := NULL;
        feature := '(intercept)';
        weight := modelstore._float(v_state -> 'intercept');
        RETURN NEXT;
        FOR j IN 1 .. d LOOP
            feature := v_features[j];
            weight := w[j];
            RETURN NEXT;
        END LOOP;
    ELSIF v_kind IN ('logistic', 'multinomial_nb') THEN
        -- score_c = (intercept) + Σ weight · x for both: logistic coef_/intercept_ (two classes: one
        -- row set, the log-odds of classes[1]); multinomial NB feature_log_prob_/class_log_prior_
        IF v_kind = 'logistic' THEN
            w := modelstore._floats(v_state -> 'coef');
            b := modelstore._floats(v_state -> 'intercept');
        ELSE
            w := modelstore._floats(v_state -> 'feature_log_prob');
            b := modelstore._floats(v_state -> 'class_log_prior');
        END IF;
        FOR c IN 1 .. cardinality(b) LOOP
            class_label := v_classes ->> (CASE WHEN v_kind = 'logistic' AND k = 2 THEN 1 ELSE c - 1 END);
            feature := '(intercept)';
            weight := b[c];
            RETURN NEXT;
            FOR j IN 1 .. d LOOP
                feature := v_features[j];
                weight := w[c][j];
                RETURN NEXT;
            END LOOP;
        END LOOP;
    ELSIF v_kind IN ('sgd_logistic', 'sgd_svm', 'sgd_linear') THEN
        -- the weights of the pipeline's features (numeric columns, then column=category or #bucket)
        v_features := ARRAY(SELECT jsonb_array_elements_text(v_state -> 'feature_names'));
        d := coalesce(cardinality(v_features), 0);
        w := modelstore._floats(v_state -> 'coef');
        IF v_kind = 'sgd_linear' THEN
            class_label := NULL;
            feature := '(intercept)';
            weight := modelstore._float(v_state -> 'intercept');
            RETURN NEXT;
            FOR j IN 1 .. d LOOP
                feature := v_features[j];
                weight := w[j];
                RETURN NEXT;
            END LOOP;
        ELSE
            b := modelstore._floats(v_state -> 'intercept');
            FOR c IN 1 .. cardinality(b) LOOP
                class_label := v_classes ->> (CASE WHEN k = 2 THEN 1 ELSE c - 1 END);
                feature := '(intercept)';
                weight := b[c];
                RETURN NEXT;
                FOR j IN 1 .. d LOOP
                    feature := v_features[j];
                    weight := w[c][j];
                    RETURN NEXT;
                END LOOP;
            END LOOP;
        END IF;
    ELSIF v_kind = 'gaussian_nb' THEN
        -- the class prior, then per feature the class mean (theta_) and variance (var_, "name (var)")
        w := modelstore._floats(v_state -> 'theta');
        v := modelstore._floats(v_state -> 'var');
        b := modelstore._floats(v_state -> 'class_prior');
        FOR c IN 1 .. k LOOP
            class_label := v_classes ->> (c - 1);
            feature := '(prior)';
            weight := b[c];
            RETURN NEXT;
            FOR j IN 1 .. d LOOP
                feature := v_features[j];
                weight := w[c][j];
                RETURN NEXT;
                feature := v_features[j] || ' (var)';
                weight := v[c][j];
                RETURN NEXT;
            END LOOP;
        END LOOP;
    ELSE
        RAISE EXCEPTION 'modelstore: model "%" is of kind "%", which modelstore.weights does not know', model, v_kind
            USING ERRCODE = 'feature_not_supported';
    END IF;
END
$$;

COMMENT ON FUNCTION modelstore.weights(text) IS
    'Parameters of a named model, one row each: linear/logistic coefficients and ''(intercept)''; '
    'multinomial_nb log feature probabilities and ''(intercept)'' = class log prior; gaussian_nb '
    '''(prior)'', the class mean of each feature and its variance as ''<feature> (var)''.';

-- Per-group models (group_by; docs/serving.md, "Per-group models"): predict and predict_class scoring with
-- the model of one group, the global model for a group the model has not seen. The group is the group
-- column's value as text (value::text); the anyelement forms cast any other type to text.
CREATE OR REPLACE FUNCTION modelstore.predict(model text, grp text, features float8[]) RETURNS float8
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores(model, features, 'predict', grp);
    RETURN modelstore._answer_value(model, r.kind, r.classes, r.value, r.scores, format('predict_class(%L, group, …)', model));
END
$$;

CREATE OR REPLACE FUNCTION modelstore.predict(model text, grp anyelement, features float8[]) RETURNS float8
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT modelstore.predict(model, grp::text, features) $$;

COMMENT ON FUNCTION modelstore.predict(text, text, float8[]) IS
    'Prediction of a per-group model (group_by) for one feature vector with the model of group grp '
    '(the group column''s value as text); the global model for a group it has not seen.';

CREATE OR REPLACE FUNCTION modelstore.predict_class(model text, grp text, features float8[]) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := modelstore._scores(model, features, 'predict_class', grp);
    RETURN modelstore._answer_label(r.kind, r.classes, r.value, r.scores);
END
$$;

CREATE OR REPLACE FUNCTION modelstore.predict_class(model text, grp anyelement, features float8[]) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT modelstore.predict_class(model, grp::text, features) $$;

COMMENT ON FUNCTION modelstore.predict_class(text, text, float8[]) IS
    'The predicted class of a per-group classifier (group_by) with the model of group grp; the global '
    'model for a group it has not seen.';
