"""Sticky splits in Envoy: the same header or cookie value always lands on the same variant.

Envoy's weighted clusters pick a backend from a number in a request header
(``weighted_clusters.header_name``) when one is there. A Lua filter on every client listener
computes that number, FNV-1a over the value of the header or cookie the route table names
(``routes.Sticky``), which each route carries in its metadata; any value a client sent is
removed first, so no client picks its own variant. Routes of a table without a sticky split
turn the filter off, so their requests never run the script.
"""

from __future__ import annotations

from typing import Any, Final

from sluice.contracts.routes import Sticky

# The request header carrying a sticky request's hash, which Envoy's weighted clusters read.
HASH_HEADER: Final = "x-sluice-sticky-hash"
FILTER: Final = "envoy.filters.http.lua"
_LUA_TYPE: Final = "type.googleapis.com/envoy.extensions.filters.http.lua.v3"

# Envoy's Lua is LuaJIT: ``bit`` does 32-bit xor. FNV-1a over the sticky value, with the
# multiplication by the FNV prime (2^24 + 403) split so that doubles stay exact. The header
# or cookie to read comes from the route's metadata (``route_config``).
_SCRIPT: Final = """
local function fnv1a(text)
  local h = 2166136261
  for i = 1, #text do
    h = bit.bxor(h, text:byte(i)) % 4294967296
    h = (h * 403 + (h % 256) * 16777216) % 4294967296
  end
  return h
end

local function cookie(header, name)
  if header == nil then return nil end
  for pair in string.gmatch(header, "[^;]+") do
    local key, value = string.match(pair, "^%s*([^=]+)=(.*)$")
    if key == name then return value end
  end
  return nil
end

function envoy_on_request(handle)
  local headers = handle:headers()
  headers:remove("HASH_HEADER")
  local meta = handle:metadata()
  local value = nil
  if meta:get("header") ~= nil then
    value = headers:get(meta:get("header"))
  elseif meta:get("cookie") ~= nil then
    value = cookie(headers:get("cookie"), meta:get("cookie"))
  end
  if value ~= nil and value ~= "" then
    headers:replace("HASH_HEADER", string.format("%d", fnv1a(value)))
  end
end
""".replace("HASH_HEADER", HASH_HEADER)


def http_filter() -> dict[str, Any]:
    """The Lua filter, for a client listener's HTTP filter chain."""
    return {
        "name": FILTER,
        "typed_config": {
            "@type": f"{_LUA_TYPE}.Lua",
            "default_source_code": {"inline_string": _SCRIPT},
        },
    }


def route_config(sticky: Sticky | None) -> dict[str, Any]:
    """What a route adds for the filter: the header or cookie to hash, or the filter off."""
    if sticky is None:
        return {
            "typed_per_filter_config": {
                FILTER: {"@type": f"{_LUA_TYPE}.LuaPerRoute", "disabled": True}
            }
        }
    by = {"header": sticky.header, "cookie": sticky.cookie}
    return {
        "metadata": {"filter_metadata": {FILTER: {k: v for k, v in by.items() if v is not None}}}
    }
