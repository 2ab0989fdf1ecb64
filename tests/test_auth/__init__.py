"""
Tests for twisted_maillab.auth (issue #3): run with `trial tests.test_auth`.
"""
