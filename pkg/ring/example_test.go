package ring_test

import (
	"fmt"

	"github.com/heraldpush/herald/pkg/ring"
)

func Example() {
	r := ring.New([]ring.Member{
		{ID: "push-1", Weight: 1},
		{ID: "push-2", Weight: 2}, // twice the capacity, about twice the users
	})
	a, _ := r.Get("alice")
	b, _ := r.Get("alice")
	fmt.Println(a == b, r.Len())
	// Output: true 2
}
