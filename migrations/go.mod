module github.com/heraldpush/herald/migrations

go 1.26.0
