package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// report is what one fault run came to.
type report struct {
	Fault       string  `json:"fault"`
	What        string  `json:"what"`
	Devices     int     `json:"devices"`
	Rate        float64 `json:"rate"`
	FaultAt     float64 `json:"fault_at_s"`
	HealedAt    float64 `json:"healed_at_s"`
	LoadSeconds float64 `json:"load_s"`

	Calls    int            `json:"calls"`
	Outcomes map[string]int `json:"outcomes"` // "200", "503 unavailable", …
	TTLOK    int            `json:"ttl_ok"`   // ttl pushes answered 200
	// Lost are ttl pushes answered 200 that no device received.
	Lost       int      `json:"lost"`
	LostSample []string `json:"lost_sample,omitempty"`
	// Phantom are ttl-0 pushes answered delivered ≥ 1 that no device received.
	Phantom       int `json:"phantom"`
	TTL0OK        int `json:"ttl0_ok"`
	TTL0Nobody    int `json:"ttl0_delivered_to_nobody"`
	Duplicates    int `json:"duplicates"`
	ReceivedTotal int `json:"received"`

	UpAcked         int      `json:"up_acked"`
	UpMissing       int      `json:"up_missing_from_archive"`
	UpMissingSample []string `json:"up_missing_sample,omitempty"`
	UpUnknown       int      `json:"up_unanswered_at_stop"`
	ArchiveError    string   `json:"archive_error,omitempty"`

	// RecoveredAfter is seconds from the fault until every device was connected and pushes were
	// delivered again (three seconds in a row); -1 when that never happened before the load ended.
	RecoveredAfter float64 `json:"recovered_after_s"`
	Disturbed      bool    `json:"disturbed"`
	// BadSeconds counts the seconds after the fault in which under 99 % of the pushes were answered 200
	// with a delivery; WorstShare is the lowest share of such pushes in any second after the fault. A
	// fault that costs a part of the users (one Redis Cluster master of three) shows a worst share near
	// the other part, not zero.
	BadSeconds int     `json:"bad_seconds"`
	WorstShare float64 `json:"worst_second_delivered_share"`
	// Events are what the fault itself observed (a replica promoted, and when).
	Events []string `json:"events,omitempty"`
}

func (r *report) addPushes(recs []pushRecord, d *devices) {
	r.Outcomes = map[string]int{}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.received {
		r.ReceivedTotal += n
		if n > 1 {
			r.Duplicates += n - 1
		}
	}
	for _, rec := range recs {
		r.Calls++
		r.Outcomes[rec.outcome]++
		if rec.outcome != "200" {
			continue
		}
		got := d.received[rec.id]
		switch {
		case rec.ttl > 0:
			r.TTLOK++
			if got == 0 {
				r.Lost++
				if len(r.LostSample) < 5 {
					r.LostSample = append(r.LostSample, rec.id)
				}
			}
		default:
			r.TTL0OK++
			if rec.delivered == 0 {
				r.TTL0Nobody++
			} else if got == 0 {
				r.Phantom++
			}
		}
	}
}

// addRecovery finds the first second after the fault from which three seconds in a row had every
// device connected and at least 99 % of the pushes made in them answered 200 with a delivery.
func (r *report) addRecovery(conns []connSample, recs []pushRecord, devices int) {
	type second struct{ calls, good int }
	secs := map[int]*second{}
	for _, rec := range recs {
		s := secs[int(rec.at.Seconds())]
		if s == nil {
			s = &second{}
			secs[int(rec.at.Seconds())] = s
		}
		s.calls++
		if rec.outcome == "200" && rec.delivered > 0 {
			s.good++
		}
	}
	connected := map[int]bool{}
	for _, c := range conns {
		connected[int(c.At)] = c.Connected >= devices
	}
	normal := func(i int) bool {
		s := secs[i]
		return connected[i] && s != nil && s.calls > 0 && float64(s.good) >= 0.99*float64(s.calls)
	}
	from, last := int(r.FaultAt), int(r.LoadSeconds)-1
	r.WorstShare = 1
	for i := from; i <= last; i++ {
		if s := secs[i]; s != nil && s.calls > 0 {
			share := float64(s.good) / float64(s.calls)
			r.WorstShare = min(r.WorstShare, share)
			if share < 0.99 {
				r.BadSeconds++
			}
		}
	}
	r.RecoveredAfter = -1
	for i := from; i+2 <= last; i++ {
		if normal(i) && normal(i+1) && normal(i+2) {
			r.RecoveredAfter = max(0, float64(i)-r.FaultAt)
			break
		}
	}
	for i := from; i <= last; i++ {
		if !normal(i) {
			r.Disturbed = true
			break
		}
	}
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "fault      %s: %s\n", r.Fault, r.What)
	fmt.Fprintf(w, "           injected at %.1f s, healed at %.1f s, load ended at %.1f s; %d devices, %.0f pushes/s\n",
		r.FaultAt, r.HealedAt, r.LoadSeconds, r.Devices, r.Rate)
	var outs []string
	for _, k := range slices.Sorted(maps.Keys(r.Outcomes)) {
		outs = append(outs, fmt.Sprintf("%s: %d", k, r.Outcomes[k]))
	}
	fmt.Fprintf(w, "pushes     %d calls (%s)\n", r.Calls, strings.Join(outs, ", "))
	fmt.Fprintf(w, "           ttl answered 200: %d, LOST (never received): %d %v\n", r.TTLOK, r.Lost, r.LostSample)
	fmt.Fprintf(w, "           ttl-0 answered 200: %d, delivered to nobody: %d, PHANTOM (delivered ≥ 1, never received): %d\n", r.TTL0OK, r.TTL0Nobody, r.Phantom)
	fmt.Fprintf(w, "           received %d, duplicates %d\n", r.ReceivedTotal, r.Duplicates)
	fmt.Fprintf(w, "upstream   acked %d, MISSING from the archive: %d %v; unanswered when stopped: %d\n", r.UpAcked, r.UpMissing, r.UpMissingSample, r.UpUnknown)
	if r.ArchiveError != "" {
		fmt.Fprintf(w, "           archive check failed: %s\n", r.ArchiveError)
	}
	fmt.Fprintf(w, "           seconds with under 99 %% delivered: %d; worst second: %.0f %% delivered\n", r.BadSeconds, 100*r.WorstShare)
	for _, e := range r.Events {
		fmt.Fprintf(w, "event      %s\n", e)
	}
	switch {
	case !r.Disturbed:
		fmt.Fprintf(w, "recovery   not disturbed\n")
	case r.RecoveredAfter < 0:
		fmt.Fprintf(w, "recovery   NOT RECOVERED before the load ended\n")
	default:
		fmt.Fprintf(w, "recovery   every device connected and pushes delivered again %.0f s after the fault\n", r.RecoveredAfter)
	}
}
