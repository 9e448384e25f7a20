"""The `eval` section of params.yaml."""

from pydantic import Field

from sslflow.section import Section


class EvalCfg(Section):
    batch_size: int = Field(512, gt=0)
