"""Every contract that crosses a process boundary: events, requests, replies and subjects."""
