package configs

// ValidAttributeType reports whether t is an attribute type as RFC 4512 allows
// one: a descriptor ("sAMAccountName", "msDS-x") or a numeric OID. Request
// syntax such as "*", "+" and options (";binary") is not.
func ValidAttributeType(t string) bool {
	if t == "" {
		return false
	}
	if t[0] >= '0' && t[0] <= '9' {
		prevDot := true
		for i := 0; i < len(t); i++ {
			switch c := t[i]; {
			case c == '.' && !prevDot:
				prevDot = true
			case c >= '0' && c <= '9':
				prevDot = false
			default:
				return false
			}
		}
		return !prevDot
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		letter := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || !(c == '-' || (c >= '0' && c <= '9'))) {
			return false
		}
	}
	return true
}
