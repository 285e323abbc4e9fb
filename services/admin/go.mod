module github.com/heraldpush/herald/services/admin

go 1.26.0
