"""The app's shared state: the home, the user store, the published marts, the config."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.config.schema import FinbotConfig, Profile
from finbot_pipelines.web import data
from finbot_pipelines.web.auth import Principal
from finbot_pipelines.web.users import UserStore


@dataclass
class WebState:
    paths: HomePaths
    store: UserStore
    published: data.Published
    configs: data.ConfigCache

    @classmethod
    def open(cls, paths: HomePaths) -> WebState:
        return cls(
            paths,
            UserStore.open(paths),
            data.Published(paths.published),
            data.ConfigCache(paths.config),
        )

    def config(self) -> FinbotConfig:
        return self.configs.get()

    def profile(self, profile_id: str) -> Profile | None:
        return next((p for p in self.config().profiles if p.id == profile_id), None)

    def visible_profiles(self, principal: Principal) -> list[Profile]:
        """The config's profiles the caller was granted, in config order."""
        return [p for p in self.config().profiles if principal.access(p.id) is not None]

    def account_profile(self, account_id: str) -> str | None:
        """The profile owning a linked account: from the config, else (an account removed
        from the config keeps its history) from the published health mart."""
        for a in self.config().linked_accounts:
            if a.id == account_id:
                return a.profile
        try:
            with self.published.cursor() as cur:
                row = cur.execute(
                    "select profile_id from marts.mart_linked_account_health "
                    "where linked_account_id = ? limit 1",
                    [account_id],
                ).fetchone()
        except data.NotPublished:
            return None
        return str(row[0]) if row else None


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.finbot
    return state
