package configs

import "time"

// maxReloadDebounce bounds reload.debounce: a change should be live within
// seconds, and a longer quiet time only delays it.
const maxReloadDebounce = time.Minute

// validate checks the reload settings.
func (r *Reload) validate(p *problems) {
	switch {
	case r.Debounce <= 0:
		p.addf("reload.debounce", "must be more than 0, not %s: e.g. 1s", r.Debounce)
	case r.Debounce > maxReloadDebounce:
		p.addf("reload.debounce", "must be at most 1m, not %s: e.g. 1s", r.Debounce)
	}
}
