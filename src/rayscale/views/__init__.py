"""Views: terminal tables (``tables``), PNG plots (``plots``), the files a run leaves beside its
bundle (``report``) and the live progress a command shows (``progress``). A view only formats."""
