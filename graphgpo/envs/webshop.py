"""WebShop seam: a thin adapter over the WebShop text environment, when it is installed.

WebShop (princeton-nlp/WebShop) is not on PyPI and needs its product data and a search index, so it
cannot run here. To use it:

    git clone https://github.com/princeton-nlp/WebShop && cd WebShop && ./setup.sh -d all
    pip install -e .                     # provides the `web_agent_site` package (needs Java for pyserini)
    make("webshop", num_products=None)   # then reset(seed) plays instruction session `seed`

Protocol mapping: the observation is WebShop's text page; ``admissible_actions`` are the clickable
actions (``click[...]``) plus ``search[<query>]`` when a search box is present; ``won`` is a purchase
with reward 1.0 (full attribute match); ``state_key`` is the page text plus the sorted admissible
actions (the recipe's anchor observation: WebShop pages already show the query and selected options).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WebShopEnv"]

_INSTALL_HELP = ("WebShop is not installed: clone https://github.com/princeton-nlp/WebShop, run its setup.sh "
                 "(downloads products and builds the search index; needs Java) and `pip install -e .` so that "
                 "the `web_agent_site` package imports. graphgpo cannot download it for you.")


class WebShopEnv:
    """WebShop's ``WebAgentTextEnv`` behind the graphgpo protocol (untested here: no data)."""

    def __init__(self, num_products: int | None = None, observation_mode: str = "text", **options: Any):
        try:
            from web_agent_site.envs.web_agent_text_env import WebAgentTextEnv
        except ImportError as err:
            raise ImportError(_INSTALL_HELP) from err
        self._env = WebAgentTextEnv(observation_mode=observation_mode, num_products=num_products, **options)
        self._obs = ""

    def _admissible(self) -> list[str]:
        avail = self._env.get_available_actions()
        actions = [f"click[{c}]" for c in avail.get("clickables", [])]
        if avail.get("has_search_bar"):
            actions.append("search[<query>]")
        return actions

    def _info(self, *, won: bool, valid: bool) -> dict:
        admissible = self._admissible()
        return {"won": won, "is_action_valid": valid, "admissible_actions": admissible,
                "state_key": (self._obs, tuple(sorted(admissible)))}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        self._obs, _ = self._env.reset(session=seed)
        info = self._info(won=False, valid=True)
        info["task"] = self._env.get_instruction_text()
        return self._obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        admissible = self._admissible()
        act = action.strip()
        valid = act in admissible or (act.startswith("search[") and "search[<query>]" in admissible)
        self._obs, reward, done, _ = self._env.step(act)
        won = bool(done and reward >= 1.0)
        return self._obs, float(reward), bool(done), False, self._info(won=won, valid=valid)

    def close(self) -> None:
        self._env.close()
