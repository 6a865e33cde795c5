"""The policy language: YAML documents, validated, compiled once and linted for the safeguards.

from trustledger.policy import load_policy, load_register
register = load_register("policies/register.yaml")      # what each event type is
policy = load_policy("policies/sesame.yaml")            # register.yaml found next to it
policy = load_policy("policies/sesame.yaml", register=register)
policy.hash                                              # "sha256:…", the version's name
policy.register_hash                                     # the register it was compiled against
"""

from trustledger.policy.compiled import CompiledPolicy, load_policy, parse_policy
from trustledger.policy.register import Register, load_register, parse_register

__all__ = ["CompiledPolicy", "Register", "load_policy", "load_register", "parse_policy",
           "parse_register"]
