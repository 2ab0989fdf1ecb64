"""
Tests for L{twisted_maillab.addresses}.
"""

import ipaddress

from twisted.trial import unittest

from twisted_maillab.addresses import clientAddress, inNetworks
from twisted_maillab.config import parseNetwork

SEED_MYNETWORKS = [parseNetwork(n) for n in ("127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128")]


class ClientAddressTests(unittest.TestCase):
    def test_forms(self):
        self.assertEqual(clientAddress("192.0.2.1"), ipaddress.ip_address("192.0.2.1"))
        # What a dual-stack socket reports for an IPv4 client.
        self.assertEqual(clientAddress("::ffff:192.0.2.1"), ipaddress.ip_address("192.0.2.1"))
        self.assertEqual(clientAddress("fe80::1%eth0"), ipaddress.ip_address("fe80::1"))
        for notIP in (None, "", "unknown", "/run/maillab.sock"):
            self.assertIsNone(clientAddress(notIP))


class InNetworksTests(unittest.TestCase):
    def test_seedMynetworks(self):
        for inside in ("127.0.0.1", "::ffff:127.0.0.1", "::1", "127.9.9.9"):
            self.assertTrue(inNetworks(inside, SEED_MYNETWORKS), inside)
        for outside in ("192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "unknown", None):
            self.assertFalse(inNetworks(outside, SEED_MYNETWORKS), outside)

    def test_eitherFormMatches(self):
        """
        An IPv4 client matches a network written in the IPv4-mapped form,
        and a mapped client matches a plain IPv4 network.
        """
        mappedOnly = [parseNetwork("[::ffff:10.0.0.0]/104")]
        self.assertTrue(inNetworks("10.1.2.3", mappedOnly))
        self.assertTrue(inNetworks("::ffff:10.1.2.3", [parseNetwork("10.0.0.0/8")]))
        self.assertFalse(inNetworks("11.1.2.3", mappedOnly))
