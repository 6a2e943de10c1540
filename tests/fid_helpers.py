"""The FID Inception fixture's weights, rebuilt from its documented numpy recipe (they are not stored)."""
import json
from pathlib import Path


def recipe_state_dict(fixtures: Path) -> dict:
    """{state-dict key: array} of `fid_inception/recipe.json` (one seeded generator per key, README section 1)."""
    recipe = json.loads((Path(fixtures) / "fid_inception" / "recipe.json").read_text())
    ns: dict = {}
    exec(recipe["numpy_snippet"], ns)   # noqa: S102 - the fixture's own documented numpy recipe
    return {e["key"]: ns["make_param"](e["i"], e, recipe["seed"]) for e in recipe["keys"]}
