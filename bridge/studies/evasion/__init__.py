"""The evasion grid: attacks x toolkits x budgets on every (model, defence), measured and judged by the bridge."""
