"""NIST StRD linear-regression dataset *Longley* (higher difficulty), with its certified values.

Source: NIST Statistical Reference Datasets, https://www.itl.nist.gov/div898/strd/lls/data/Longley.shtml
(Longley, J. W. (1967), "An Appraisal of Least Squares Programs for the Electronic Computer from the
Point of View of the User", JASA 62, 819–841). Model: y = b0 + b1 x1 + … + b6 x6 + e, 16 observations.

    y  = Employed (total derived employment)     x1 = GNP implicit price deflator (1954 = 100)
    x2 = GNP                                     x3 = Unemployed
    x4 = Size of armed forces                    x5 = Non-institutional population ≥ 14 years
    x6 = Year (1947–1962)

``ROWS`` holds (y, x1, …, x6) exactly as in ``Longley.dat``; the certified values are those NIST
computed in 500-digit arithmetic and publishes to 15 significant digits.
"""

FEATURES = ("x1", "x2", "x3", "x4", "x5", "x6")
TARGET = "y"
COLUMNS = (*FEATURES, TARGET)

#: (y, x1, x2, x3, x4, x5, x6), in NIST's order (by year)
ROWS = (
    (60323, 83.0, 234289, 2356, 1590, 107608, 1947),
    (61122, 88.5, 259426, 2325, 1456, 108632, 1948),
    (60171, 88.2, 258054, 3682, 1616, 109773, 1949),
    (61187, 89.5, 284599, 3351, 1650, 110929, 1950),
    (63221, 96.2, 328975, 2099, 3099, 112075, 1951),
    (63639, 98.1, 346999, 1932, 3594, 113270, 1952),
    (64989, 99.0, 365385, 1870, 3547, 115094, 1953),
    (63761, 100.0, 363112, 3578, 3350, 116219, 1954),
    (66019, 101.2, 397469, 2904, 3048, 117388, 1955),
    (67857, 104.6, 419180, 2822, 2857, 118734, 1956),
    (68169, 108.4, 442769, 2936, 2798, 120445, 1957),
    (66513, 110.8, 444546, 4681, 2637, 121950, 1958),
    (68655, 112.6, 482704, 3813, 2552, 123366, 1959),
    (69564, 114.2, 502601, 3931, 2514, 125368, 1960),
    (69331, 115.7, 518173, 4806, 2572, 127852, 1961),
    (70551, 116.9, 554894, 4007, 2827, 130081, 1962),
)

#: certified estimates b0 (intercept), b1 … b6
CERTIFIED_PARAMS = (
    -3482258.63459582,
    15.0618722713733,
    -0.358191792925910e-01,
    -2.02022980381683,
    -1.03322686717359,
    -0.511041056535807e-01,
    1829.15146461355,
)

#: certified standard deviations of b0 … b6
CERTIFIED_BSE = (
    890420.383607373,
    84.9149257747669,
    0.334910077722432e-01,
    0.488399681651699,
    0.214274163161675,
    0.226073200069370,
    455.478499142212,
)

CERTIFIED_RESIDUAL_SD = 304.854073561965
CERTIFIED_RSQUARED = 0.995479004577296

#: certified analysis of variance
CERTIFIED_ANOVA = {
    "df_model": 6,
    "ess": 184172401.944494,  # regression sum of squares
    "mse_model": 30695400.3240823,
    "fvalue": 330.285339234588,
    "df_resid": 9,
    "ssr": 836424.055505915,  # residual sum of squares
    "mse_resid": 92936.0061673238,
}


def feature_target_rows():
    """The rows reordered as (x1, …, x6, y): the column order of ``COLUMNS`` and of LinearStats."""
    return [(*row[1:], row[0]) for row in ROWS]
