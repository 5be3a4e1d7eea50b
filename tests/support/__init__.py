"""Helpers the tests share (not tests): paths, the CLI as a child process, servers, seeded stores."""
