package detect

import (
	"strings"
	"time"
)

// A baseline is what one tenant's records have shown to be normal: every
// value a detector has seen (an application reading mail, a network a user
// reads mail from, ...) with when it was first and last seen, and each
// mailbox's daily mail-access volume. Times are record times (CreationTime),
// not arrival times, so late and out-of-order records learn the same
// baseline as punctual ones.
type baseline struct {
	First  int64             // unix seconds of the earliest record: learning runs from here
	Latest int64             // ... and of the latest, the clock that ages values out
	Seen   map[string]*value // detector key → when it was seen
	Volume map[string]*volume
}

// value is one learned value. Flagged is when a value first appeared after
// learning, which made it an alert; records with the value during the
// following Options.Follow still add to that alert, so one alert shows the
// whole incident (every mailbox an unknown application read, say).
type value struct {
	First, Last, Flagged int64
}

// volume is a mailbox's mail access per UTC day.
type volume struct {
	Day    int32   // the current day (days since the epoch)
	Count  int64   // items accessed on Day
	Peak   float64 // the highest daily count before Day, decaying slowly
	Days   int32   // days with any access before Day
	Raised int32   // the last day a spike was raised for
}

func newBaseline() *baseline {
	return &baseline{Seen: map[string]*value{}, Volume: map[string]*volume{}}
}

// clock advances the baseline's clock to t.
func (b *baseline) clock(t int64) {
	if b.First == 0 || t < b.First {
		b.First = t
	}
	if t > b.Latest {
		b.Latest = t
	}
}

// learning reports whether a record at t falls in the learning period.
func (b *baseline) learning(t int64, o *Options) bool {
	return t < b.First+int64(o.Learning/time.Second)
}

// see records key at t and reports whether the record is news: the key was
// unknown and learning is over, or it was flagged so and t is within the
// follow-up period. The key is copied only when it is new.
func (b *baseline) see(key []byte, t int64, o *Options) bool {
	v := b.Seen[string(key)]
	if v == nil {
		v = &value{First: t, Last: t}
		b.Seen[string(key)] = v
		if !b.learning(t, o) {
			v.Flagged = t
			return true
		}
		return false
	}
	v.First, v.Last = min(v.First, t), max(v.Last, t)
	return v.Flagged != 0 && t >= v.Flagged && t < v.Flagged+int64(o.Follow/time.Second)
}

// known reports whether key was ever seen.
func (b *baseline) known(key []byte) bool { return b.Seen[string(key)] != nil }

// flagged reports whether key first appeared after learning: its own
// alert covers what follows.
func (b *baseline) flagged(key []byte) bool {
	v := b.Seen[string(key)]
	return v != nil && v.Flagged != 0
}

// count adds n accessed items to mailbox on day and reports whether the
// day's count has just gone far above the mailbox's history.
func (b *baseline) count(mailbox string, day int32, n int64, learning bool, o *Options) (spike bool, peak float64) {
	v := b.Volume[mailbox]
	if v == nil {
		v = &volume{Day: day}
		b.Volume[strings.Clone(mailbox)] = v // not pinning the record's strings
	}
	switch {
	case day < v.Day:
		// A late record of a past day: the peak already covers that day
		// as far as it matters; counting it into today would be wrong.
		return false, v.Peak
	case day > v.Day:
		if v.Count > 0 {
			v.Days++
		}
		// The peak halves over about three months without such a day.
		v.Peak = max(v.Peak*pow(0.992, int(day-v.Day)), float64(v.Count))
		v.Day, v.Count = day, 0
	}
	before := v.Count
	v.Count += n
	if learning || v.Days < int32(o.MinVolumeDays) || v.Raised == day {
		return false, v.Peak
	}
	limit := max(o.VolumeFactor*v.Peak, v.Peak+float64(o.VolumeFloor))
	if float64(before) <= limit && float64(v.Count) > limit {
		v.Raised = day
		return true, v.Peak
	}
	return false, v.Peak
}

func pow(x float64, n int) float64 {
	r := 1.0
	for ; n > 0; n-- {
		r *= x
		if r < 1e-6 {
			return 0
		}
	}
	return r
}

// forget drops values not seen for o.Forget before the baseline's clock, so
// state stays bounded as users, applications and addresses come and go.
func (b *baseline) forget(o *Options) int {
	cut := b.Latest - int64(o.Forget/time.Second)
	n := 0
	for k, v := range b.Seen {
		if v.Last < cut {
			delete(b.Seen, k)
			n++
		}
	}
	day := int32(cut / 86400)
	for k, v := range b.Volume {
		if v.Day < day {
			delete(b.Volume, k)
		}
	}
	return n
}

// merge adds what other learned (from stored history, say) to b. Values
// seen in both keep the earlier first and later last sighting; a value the
// history knows is no longer news.
func (b *baseline) merge(other *baseline) {
	if other.First != 0 {
		b.clock(other.First)
		b.clock(other.Latest)
	}
	for k, ov := range other.Seen {
		v := b.Seen[k]
		if v == nil {
			b.Seen[k] = &value{First: ov.First, Last: ov.Last}
			continue
		}
		if ov.First < v.First {
			v.First = ov.First
			if v.Flagged != 0 && ov.First < v.Flagged {
				v.Flagged = 0
			}
		}
		v.Last = max(v.Last, ov.Last)
	}
	for k, ov := range other.Volume {
		v := b.Volume[k]
		if v == nil {
			x := *ov
			b.Volume[k] = &x
			continue
		}
		v.Peak = max(v.Peak, ov.Peak)
		v.Days = max(v.Days, ov.Days)
	}
}
