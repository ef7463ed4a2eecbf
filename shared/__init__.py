"""Code shared by the agent and the central: chunk model, signing, the chunk store, the clock."""
