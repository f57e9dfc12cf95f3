"""OCR models: engines (ONNX Runtime), DB text detection, CTC text recognition, model zoo."""
