"""The named choices the package accepts, in one place and light to import: configs, library
functions and the command line all take them from here."""

NOISE_MODELS = ("fixed", "isotropic", "anisotropic", "anisotropic-add")  # noise/: the models of Σ_i
DENOISE_KINDS = ("none", *NOISE_MODELS)  # denoise.kind: auxiliary denoising in supervised training
DENOISE_MODES = ("separate", "dens")  # denoise.mode (train/denoising.py)
LOSS_FORMS = ("mse", "dens")  # optim.loss (train/losses.py)
DTYPES = ("float32", "float64")
OPTIMIZERS = ("BFGS", "LBFGS", "FIRE")  # ASE's
ENSEMBLES = ("nve", "langevin")
SAMPLERS = ("anids", "isotropic", "normal-modes", "xtb-md")  # fit's first configurations
SELECTIONS = ("random", "farthest", "committee")  # which of fit's candidate frames get DFT labels
EXECUTORS = ("local", "dask")  # fit's DFT labelling
DISPERSIONS = ("d3bj",)
XTB_METHODS = ("GFN2-xTB", "GFN1-xTB")  # tblite's
