"""The molecule to fit: from a SMILES string with RDKit (hydrogens added, several seeded ETKDG
v3 conformers relaxed with MMFF94, the lowest kept; charge from the formal charges, spin from
the radical electrons), or from a structure file with the charge and spin given."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from ..data import check_structure


@dataclass
class Molecule:
    atoms: Atoms  # positions in Å
    charge: int
    spin: int  # 2S: the number of unpaired electrons
    source: str  # the SMILES string or the file it came from
    conformers: list[Atoms] = field(default_factory=list)  # distinct starting conformers, lowest first (atoms among them)

    def __post_init__(self):
        if not self.conformers:
            self.conformers = [self.atoms]


def molecule_from_smiles(smiles: str, n_conformers: int = 10, seed: int = 0) -> Molecule:
    """The lowest-MMFF94-energy conformer of `n_conformers` ETKDG v3 embeddings (seeded); all of
    them, relaxed, lowest first, in `conformers`."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")  # its parse messages would repeat ours
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}: RDKit cannot parse it")
    fragments = Chem.GetMolFrags(mol)
    if len(fragments) > 1:
        raise ValueError(f"SMILES {smiles!r} has {len(fragments)} disconnected fragments (a salt or a mixture); "
                         "fit one molecule at a time")
    charge = Chem.GetFormalCharge(mol)
    spin = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    conformers = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not conformers:
        raise ValueError(f"RDKit could not embed a 3-D structure for {smiles!r}")
    if not AllChem.MMFFHasAllMoleculeParams(mol):
        raise ValueError(f"MMFF94 has no parameters for {smiles!r}; pass a 3-D structure file instead")
    results = AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    order = np.argsort([energy for _, energy in results], kind="stable")
    relaxed = [Atoms(numbers=numbers, positions=mol.GetConformer(conformers[k]).GetPositions()) for k in order]
    return Molecule(relaxed[0], charge, spin, smiles, relaxed)


def molecule_from_input(text: str, charge: int | None = None, spin: int | None = None, seed: int = 0) -> Molecule:
    """A structure file (its first frame; charge and spin as given, default 0) or a SMILES
    string (charge and spin from the chemistry; given values must agree)."""
    if Path(text).is_file():
        from ase.io import read

        atoms = read(text, index=0)
        atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        check_structure(atoms, text)
        return Molecule(atoms, charge or 0, spin or 0, str(text))
    molecule = molecule_from_smiles(text, seed=seed)
    for name, given, derived in (("charge", charge, molecule.charge), ("spin", spin, molecule.spin)):
        if given is not None and given != derived:
            raise ValueError(f"--{name} {given} contradicts the SMILES {text!r}, which gives {name} {derived}")
    return molecule
