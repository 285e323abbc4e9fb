module github.com/heraldpush/herald/services/push-route

go 1.26.0
