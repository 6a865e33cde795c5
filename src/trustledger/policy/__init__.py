"""The policy language: YAML documents, validated, compiled once and linted for the safeguards.

from trustledger.policy import load_policy
policy = load_policy("policies/sesame.yaml")   # validation and linter always run
policy.hash                                     # "sha256:…", the version's name
"""

from trustledger.policy.compiled import CompiledPolicy, load_policy, parse_policy

__all__ = ["CompiledPolicy", "load_policy", "parse_policy"]
