"""MCP servers: snapshots of what they offer, and diffs that say which changes break an agent."""
