from rayscale.cli import app

app(prog_name="rayscale")
