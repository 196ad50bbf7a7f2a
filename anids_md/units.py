"""Unit constants. Inside the package: energies in eV, lengths in Å, forces in eV/Å."""

KCAL_PER_MOL_IN_EV = 0.0433641043  # 1 kcal/mol in eV (CODATA 2018 based)
HARTREE_IN_EV = 27.211386245988
BOHR_IN_ANGSTROM = 0.529177210903
HARTREE_PER_BOHR_IN_EV_PER_A = HARTREE_IN_EV / BOHR_IN_ANGSTROM
MEV_PER_EV = 1000.0  # errors are reported in meV and meV/Å
FS_PER_PS = 1000.0  # MD time steps in fs, trajectories and drifts in ps

# Unit names accepted by readers, mapped to the factor that converts them to eV.
ENERGY_UNITS_TO_EV = {
    "eV": 1.0,
    "meV": 1e-3,
    "kcal/mol": KCAL_PER_MOL_IN_EV,
    "kJ/mol": KCAL_PER_MOL_IN_EV / 4.184,
    "Hartree": HARTREE_IN_EV,
}


def energy_unit_factor(unit: str) -> float:
    """Factor converting `unit` to eV; a clear error for an unknown unit."""
    try:
        return ENERGY_UNITS_TO_EV[unit]
    except KeyError:
        raise ValueError(
            f"unknown energy unit {unit!r}; choose one of {sorted(ENERGY_UNITS_TO_EV)}"
        ) from None


def forces_unit_factor(unit: str | None, energy_unit: str = "eV") -> float:
    """Factor converting forces in `unit` ("<energy unit>/Å" or "Hartree/Bohr"; None:
    `energy_unit`/Å) to eV/Å."""
    if unit is None:
        return energy_unit_factor(energy_unit)
    if unit == "Hartree/Bohr":
        return HARTREE_PER_BOHR_IN_EV_PER_A
    energy, _, length = unit.rpartition("/")
    if length in ("Å", "A", "Ang", "Angstrom") and energy in ENERGY_UNITS_TO_EV:
        return ENERGY_UNITS_TO_EV[energy]
    choices = sorted(f"{u}/Å" for u in ENERGY_UNITS_TO_EV) + ["Hartree/Bohr"]
    raise ValueError(f"unknown forces unit {unit!r}; choose one of {choices}")


BOLTZMANN_EV_PER_K = 8.617333262e-5  # k_B (CODATA 2018)
