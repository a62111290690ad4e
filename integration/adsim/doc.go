// Package adsim is an in-process Active Directory simulator: a Directory seeded
// with the test bed's accounts (package testbed) served by any number of DCs over
// LDAPS, answering binds and searches the way Windows AD (AADDS) does where Samba
// differs, with lockout, paging, AD's matching rules, counters and fault hooks.
// It backs the gateway's fast tests, fault-injection tests, benchmarks and the
// `ldapgate demo` command.
//
// Two DCs replicating one domain:
//
//	dir, err := adsim.NewDirectory(adsim.Config{})
//	dc1, err := dir.NewDC(adsim.DCConfig{Name: "dc1"})
//	dc2, err := dir.NewDC(adsim.DCConfig{Name: "dc2", USNOffset: 100000})
//	err = dc1.Start("127.0.0.1:0")
//	err = dc2.Start("127.0.0.1:0")
//	defer dc1.Close()
//	conn, err := ldap.DialURL(dc1.URL(), ldap.DialWithTLSConfig(dc1.ClientTLSConfig()))
//
// What it does like Windows AD: bind names as DN, UPN, NetBIOS\login or bare
// sAMAccountName; 49 with AD's diagnostic text and sub-codes 525, 52e, 533, 701,
// 773, 532 and 775 (775 whatever the password; the others only with the right
// one); an empty password is an unauthenticated bind that succeeds as anonymous;
// anonymous connections may read the rootDSE only (others get 1 with AD's
// 000004DC text); at most MaxPageSize entries per page, and an unpaged search
// with more gets that many and sizeLimitExceeded; writes get 53.
//
// Where it is simpler than AD: the DCs share one lockout state (as if the PDC
// emulator always counted), badPwdCount is not per DC, there are no referrals
// or tombstones, and gldap (v0.1.14) drops the connection on Abandon, Compare
// and ModifyDN requests and on filters with a ":dn" extensible match.
package adsim
