// Package loadgen is an LDAP load generator: a number of concurrent clients
// bind, search, or search then bind (as pascom does) against a directory or the
// gateway for a time or a count, and Run reports throughput, latency quantiles,
// result codes and a per-second timeline. It backs `ldapgate bench` and the
// benchmark scenarios in integration/bench.
//
//	res, err := loadgen.Run(ctx, loadgen.Config{
//		URL:         "ldap://127.0.0.1:3389",
//		Mode:        loadgen.ModeBind,
//		Logins:      []loadgen.Login{{Name: "jdoe", Password: pw}},
//		Concurrency: 8,
//		Duration:    10 * time.Second,
//	})
//
// Latencies are kept in a fixed-size log-linear histogram (within 1%), so a
// long run costs no more memory than a short one. Passwords are never logged,
// printed or put in an error.
package loadgen
