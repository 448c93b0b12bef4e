-- The SGD-trained families (docs/continuous.md): their models are stored as named models like the others.
ALTER TABLE modelstore.fitted_models DROP CONSTRAINT fitted_models_kind_check;
ALTER TABLE modelstore.fitted_models ADD CONSTRAINT fitted_models_kind_check
    CHECK (kind IN ('linear', 'gaussian_nb', 'multinomial_nb', 'logistic', 'sgd_logistic', 'sgd_svm', 'sgd_linear'));
