module github.com/heraldpush/herald/services/push-server

go 1.26.0
