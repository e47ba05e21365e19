"""nbval's settings for the notebooks (`pytest --nbval-lax notebooks/`, run by `make test`)."""

# Once a cell has finished, nbval waits at most 5 s for each of its output messages and fails the cell
# otherwise; on two CPU cores busy with other work a message can take longer to arrive (seen once with
# notebook 05 while another kernel trained). The cell's own limit stays nbval's --nbval-cell-timeout.
OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
